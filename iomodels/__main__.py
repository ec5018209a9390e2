from iomodels.cli import main

raise SystemExit(main())
