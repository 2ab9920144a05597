"""`python -m trainact ...` is the `trainact` command (also under `torchrun ... -m trainact compare`)."""
from trainact.harness.cli import main

raise SystemExit(main())
