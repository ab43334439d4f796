"""`python -m convatlas ...` (also what `torchrun -m convatlas train ...` runs)."""

from convatlas.cli import main

raise SystemExit(main())
