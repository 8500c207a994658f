"""The segment API on top, what a train script talks to: ``batcher.segment()`` (``start``), the
loop that orchestrates (``loop``), its settings, report, loader replay and script end. Imports
every floor below. (Not named ``segment``: that would shadow the function ``batcher.segment``.)"""
