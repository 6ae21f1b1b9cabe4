"""``python -m docker_tls_cli`` is ``docker-tls``."""

import sys

from docker_tls_cli.main import main

sys.exit(main())
