import sys

from lasched.cli import main

sys.exit(main())
