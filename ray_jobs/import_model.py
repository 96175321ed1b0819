"""`ray job submit --working-dir . -- python -m ray_jobs.import_model ...`: the same arguments as `edn import-model`."""
import sys

from edn.cli import main

if __name__ == "__main__":
    sys.exit(main(["import-model", *sys.argv[1:]]))
