// The SQL of the annotation tables (schema migration 3; see annotation_schema.cpp).
#pragma once

namespace posttrain::datastore {

const char* annotation_tables_sql();

}  // namespace posttrain::datastore
