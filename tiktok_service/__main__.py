import sys

from tiktok_service.cli import main

sys.exit(main())
