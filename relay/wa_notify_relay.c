/* wa_notify_relay: placeholder until the webhook relay lands. */
#include <stdio.h>
int
main(void)
{
	fprintf(stderr, "wa_notify_relay: not built yet\n");
	return 1;
}
