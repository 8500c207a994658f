"""The workflow side of torch-batcher: everything that runs outside a training job.

The experiments of ``config.yaml`` and their schema, the launch commands of a segment (plain,
torchrun, srun) and its Slurm resources, the chain walk, progress and ETA, plots, and the
``batcher`` command line. Torch-free, so the Snakefile and the CLI start in a fraction of a
second; it reads the run folder only through the format owners of the in-job library
(:mod:`batcher.run.layout`, :mod:`batcher.run.status`, :mod:`batcher.ckpt.manifest`, :mod:`batcher.run.metrics`).
The in-job library never imports it (``tests/test_layering.py``).
"""
