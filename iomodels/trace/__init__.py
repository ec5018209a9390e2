"""Who waits where: one scripted scenario run against a real server while the kernel's side of
it is traced (strace), each system call classified as waiting for the data, copying it, or
neither, and drawn in the layout of Stevens' figures 6.1-6.6 (UNIX Network Programming, ch. 6).

    scenario.py  the client: connect, stay silent for a delay, send one request, read, close
    strace.py    run a server under strace (through the launcher) and parse what it wrote
    phases.py    keep the calls of that connection's life; wait / copy / other; the sentence
    timeline.py  `iomodels trace MODEL`: the terminal timeline and --json lines
    figure.py    the figures: lanes per thread, real durations on a broken time axis
    overhead.py  how much tracing slows a system call, measured, for the page
"""
