"""`ray job submit --working-dir . -- python -m ray_jobs.ablate ...`: the same arguments as `edn ablate`."""
import sys

from edn.cli import main

if __name__ == "__main__":
    sys.exit(main(["ablate", *sys.argv[1:]]))
