"""`python -m microstd`: the same as the `microstd` command."""

from microstd.cli import main

raise SystemExit(main())
