"""The HTX sandbox's old module path, kept only because deploy/stack/sandbox.py (SANDBOX_MODULE) still starts
`python -m deploy.sandbox.server`; the program is deploy/sandbox/htx/server.py. Remove once that reference moves."""

from deploy.sandbox.htx.server import main

if __name__ == "__main__":
    main()
