import sys

from jaxhub._src.cli import main

sys.exit(main())
