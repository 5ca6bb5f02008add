"""What the tests share, imported by name and never reached through conftest: ``serving`` (one way to
serve an app in a thread), ``apps`` (a live Checkpoint for a test), ``databases`` (one fresh, migrated
database), ``waiting`` (one bounded poll), ``race`` (calls released together), ``clock`` (a clock
tests move instead of sleeping; ``apps.background_task`` runs a background task by hand), ``processes``
(the environment of a process started from scratch), ``stored`` (a request written through the
store), and the helpers of particular suites (``proxy``, ``governed``, ``auth``, ``audit``, ``hostile``,
``relay``, ``browser``, ``compat``). Fixtures two modules share are defined once in tests/conftest.py."""
