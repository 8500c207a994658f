"""The run folder and its formats: the layout (``layout``), the status files (``status``), the
metrics log (``metrics``), the run lock (``lock``), the recorded command line (``command``), and
the durable-file primitives they share (``atomic_files``, ``background``). Torch-free."""
