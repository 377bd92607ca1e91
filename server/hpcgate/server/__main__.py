from hpcgate.server.cli import main

raise SystemExit(main())
