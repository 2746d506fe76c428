from competitions.street_char_rec.cli import main

raise SystemExit(main())
