// The store's schema as an ordered list of forward migrations. PRAGMA user_version holds the
// number of migrations applied; PRAGMA application_id marks the file as a posttrain store.
// Opening runs the missing migrations in one transaction; a store whose version is above
// kSchemaVersion was written by a newer posttrain and is refused.
#pragma once

#include "datastore/sqlite.h"

namespace posttrain::datastore {

constexpr int kSchemaVersion = 3;
constexpr int kApplicationId = 0x50535452;  // "PSTR"

// Applies migrations up to `target` (default: all). Throws UsageError for a newer or foreign
// store. Safe when several processes open a fresh store at once (runs under BEGIN IMMEDIATE
// and re-reads the version inside the transaction).
void migrate(Database& db, int target = kSchemaVersion);
// The version stored in the file (0 for a new file).
int schema_version(Database& db);

}  // namespace posttrain::datastore
