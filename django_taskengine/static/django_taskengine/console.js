/* django-taskengine admin console: live refresh of the pages that show the engine's state. */
