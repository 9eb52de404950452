from fsgr.cli import main

raise SystemExit(main())
