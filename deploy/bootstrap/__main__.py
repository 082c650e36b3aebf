import sys

from deploy.bootstrap.run import main

sys.exit(main())
