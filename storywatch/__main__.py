from storywatch.cli import entrypoint

entrypoint()
