"""`ray job submit --working-dir . -- python -m ray_jobs.render ...`: the same arguments as `edn render`."""
import sys

from edn.cli import main

if __name__ == "__main__":
    sys.exit(main(["render", *sys.argv[1:]]))
