"""`ray job submit --working-dir . -- python -m ray_jobs.upgrade_dataset ...`: the same arguments as
`edn upgrade-dataset`."""
import sys

from edn.cli import main

if __name__ == "__main__":
    sys.exit(main(["upgrade-dataset", *sys.argv[1:]]))
