import sys

from batcher.workflow.cli import main

sys.exit(main())
