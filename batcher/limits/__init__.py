"""Time limits, the ground floor: durations and instants (``timespec``), the time-limit policies
(``policy``) and DAS-5's (``das5``). Pure Python: the workflow side uses them too."""
