"""Checkpoints: the manifest and the store (atomic, verified, keep-last-K), reading and
verifying, sharded FSDP folders, host snapshots and background saves, what a checkpoint holds
(``training_state``, ``captured``), the ranks' collective save (``ranks``, ``saving``), the
save interval (``periodic``) and the users' ``load_checkpoint``. Imports ``run`` and below."""
