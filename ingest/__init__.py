"""The ingest stage: poll feeds, publish each new article once.

The flow, one module per step::

    fetch.py      conditional GET (ETag / Last-Modified), size and time limits, redirects
    parse.py      bytes -> feed entries with feedparser; hostile and useless documents refused
    normalise.py  entry -> Article: clean text, canonical URL, stable id, UTC date, language
    dedup.py      the seen-store: publish each article once, changed headlines as updates
    schedule.py   per-feed state, next_check_at, back-off and feed health
    hosts.py      per-host politeness: in-flight cap, minimum gap, 403/429/503 back-off
    poll.py       one poll of one feed (fetch -> parse -> normalise), as plain data
    service.py    IngestService: scheduler, thread pool, publish, then commit state
    commands.py   ``storywatch feeds check`` and ``storywatch feeds import``

Only ``service.py`` touches the bus and the store (``commands.py`` reads the store).
"""
