import sys

from tiktok_service.operator.main import cli

sys.exit(cli())
