from ndr_sweeper.cli import main

raise SystemExit(main())
