import sys

from tiktok_service_dev.cli import main

sys.exit(main())
