/* http_config.h - whether `vibee serve` is built: VB_HAVE_SERVE is defined when the headers of
 * libmicrohttpd and jansson are installed (Debian: libmicrohttpd-dev libjansson-dev; the CLI then
 * links -lmicrohttpd -ljansson), or when the build defines it. VB_NO_SERVE forces it off. */
#ifndef VB_HTTP_CONFIG_H
#define VB_HTTP_CONFIG_H

#if !defined(VB_HAVE_SERVE) && !defined(VB_NO_SERVE) && defined(__has_include)
#if __has_include(<microhttpd.h>) && __has_include(<jansson.h>)
#define VB_HAVE_SERVE 1
#endif
#endif

#endif
