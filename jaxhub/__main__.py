import sys

from jaxhub.cli import main

sys.exit(main())
