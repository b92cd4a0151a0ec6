"""storywatch: poll news feeds, cluster articles into stories, alert on the stories people watch.

The core package holds what every stage shares: message schemas, settings, the bus and
the state store. Stages (``ingest``, ``enrich``, ``alerts``) import the core; the core
imports no stage, except :mod:`storywatch.cli`, the composition root.
"""

__version__ = "0.1.0"
