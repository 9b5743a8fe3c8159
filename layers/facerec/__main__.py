import sys

from facerec.interfaces.cli import main

sys.exit(main())
