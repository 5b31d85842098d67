import sys

from neuronas.cli import main

sys.exit(main())
