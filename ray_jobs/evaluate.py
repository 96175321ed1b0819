"""`ray job submit --working-dir . -- python -m ray_jobs.evaluate ...`: the same arguments as `edn evaluate`."""
import sys

from edn.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
