/*
 * tsanjmp.c: lets ThreadSanitizer see Lua's longjmps (layer: runtime; only
 * in SANITIZE=thread builds, empty otherwise). Debian builds liblua with
 * _FORTIFY_SOURCE, so every Lua error and every yield from C (task waits)
 * leaves through __longjmp_chk, which TSan does not intercept: its shadow
 * call stack then kept the frames left behind, one or more per yield, until
 * after about 65,000 yields TSan's own check failed and the process hung
 * (`netlua -m bench` for 0.5 s under TSan). Our definition takes the place of
 * glibc's for the statically linked liblua, and goes through longjmp, which
 * TSan intercepts. Lua pairs these with _setjmp, so no signal mask was saved
 * and longjmp does exactly what __longjmp_chk would.
 */
#if defined(__SANITIZE_THREAD__)
#include <setjmp.h>

void __longjmp_chk(jmp_buf env, int value);

void __longjmp_chk(jmp_buf env, int value) { longjmp(env, value); }
#else
typedef int nl_tsanjmp_unused; /* ISO C wants a declaration in every file */
#endif
