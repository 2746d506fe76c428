from competitions.news_text_cls.cli import main

raise SystemExit(main())
