from __future__ import annotations

import sys

from voltaro.cli import main

sys.exit(main())
