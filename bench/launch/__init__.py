"""Launching: the matched grid as submitit jobs (local processes, SLURM job arrays, in-process), and
the SLURM profiles that say how a cluster is asked for resources."""
