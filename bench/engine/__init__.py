"""The training engine: one matched run from its config to its record.

Layers inside, each a module with one job: ``execution`` (how a run executes), ``distributed``
(process group, reductions), ``seeding`` (seeds and sample order), ``batching`` (global batch over
ranks and accumulation), ``optim`` (the recipe's optimiser rule and schedule), ``checkpoint``,
``build`` (model and data of a run), ``evaluate`` (multi-view evaluation), ``record`` (the run's
record) and ``loop`` (the run itself). ``features`` trains a linear probe on cached features and
``pretrain`` pre-trains the synthetic suite's image backbone, both with the same optimiser rule.
"""
from bench.engine.checkpoint import CHECKPOINT_NAME
from bench.engine.execution import Execution
from bench.engine.loop import LOG_NAME, execute_run, work_dir

__all__ = ["CHECKPOINT_NAME", "LOG_NAME", "Execution", "execute_run", "work_dir"]
