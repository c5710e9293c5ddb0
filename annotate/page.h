// The annotation page: one self-contained HTML document (CSS and plain JavaScript inline,
// nothing loaded from elsewhere) compiled into the binary from page.html, so the server needs
// no files beside it. It renders every value from the data with textContent, never as HTML.
#pragma once

namespace posttrain::annotate {

const char* page_html();

}  // namespace posttrain::annotate
