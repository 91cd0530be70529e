"""The checks, one module per rule group: the group is the part of a check's id
before the dot (`scope.denied` is in `scope.py`, `delete-all.include-self` in
`delete_all.py`), so `-k scope` runs one module's checks. `common.py` holds what
the scenario groups share. Importing a module registers its checks;
`conformance/catalog.py` imports them all. The response groups (`schema`,
`headers`, `errors`) import neither pytest nor a context, so the proxy can judge
live traffic with them."""
