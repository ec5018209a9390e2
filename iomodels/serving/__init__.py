"""The serving side: the sans-I/O protocol (core), configuration, errno sets, counters, the models'
toolkit, the models themselves, worker processes and the metrics endpoint.

Imports flow one way: core and config know nothing else; toolkit builds on them; each model uses
the toolkit; workers and metrics run models and read counters. Nothing here imports the process
entry point (iomodels/startup.py), the client, the load generator or the lab.
"""
