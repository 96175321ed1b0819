"""`ray job submit --working-dir . -- python -m ray_jobs.onboard_curve ...`: the same arguments as
`edn onboard-curve`."""
import sys

from edn.cli import main

if __name__ == "__main__":
    sys.exit(main(["onboard-curve", *sys.argv[1:]]))
