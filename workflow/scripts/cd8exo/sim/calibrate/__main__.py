"""`python -m cd8exo.sim.calibrate`: see :func:`cd8exo.sim.calibrate.run.main`."""

import sys

from cd8exo.sim.calibrate.run import main

sys.exit(main())
