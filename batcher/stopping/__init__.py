"""When a segment stops: its deadline (``deadline``, Slurm's end time in ``slurm``), the stop
signals (``signals``), the step and save time estimators (``timing``), the learned margin
(``margin``) and the decision at each step boundary (``decision``). Imports only ``limits``."""
