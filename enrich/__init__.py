"""The enrich stage: embed articles, cluster them into stories, match watched topics."""
