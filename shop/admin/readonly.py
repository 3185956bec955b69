"""Read-only admin pages, for rows written only by services (or append-only)."""


class ReadOnlyAdminMixin:
    """Rows written only by services (or append-only): staff may look, never
    add, edit or delete. ``obj=None`` defaults fit both ModelAdmin and inlines."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
