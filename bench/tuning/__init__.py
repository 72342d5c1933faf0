"""Fair tuning (``bench.run --tune``): every method gets the same trials, each trained on the training
set minus a held-out split and scored on that split; the chosen values then run as ordinary runs.

``spec``: knobs, grid points and a trial's identity; ``select``: the selection rule over trial
records; ``plan``: trials and final runs from a grid; ``protocol``: the two stages launched.
"""
