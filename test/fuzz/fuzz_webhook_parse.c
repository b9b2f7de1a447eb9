/*-------------------------------------------------------------------------
 * fuzz_webhook_parse.c
 *	  libFuzzer target for the webhook payload parser (src/webhook_parse.c):
 *	  wh_parse() on arbitrary bytes, then a walk over everything it
 *	  returned (strings must be NUL-terminated valid UTF-8), the opt-out
 *	  keyword normalisation of every inbound text, and the signature header
 *	  decoder.  Built outside the backend; see test/fuzz/README.md.
 *-------------------------------------------------------------------------
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "webhook_parse.h"

static void
check_str(const char *s)
{
	if (s && !wh_utf8_valid((const unsigned char *) s, strlen(s)))
		abort();
}

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	WhPayload	p;
	WhParseResult r = wh_parse((const char *) data, size, &p);
	unsigned char sig[32];
	char		norm[256];

	if (r == WH_OK)
	{
		for (size_t i = 0; i < p.nstatuses; i++)
		{
			check_str(p.statuses[i].wamid);
			check_str(p.statuses[i].status);
			check_str(p.statuses[i].recipient_id);
			check_str(p.statuses[i].biz_opaque);
			check_str(p.statuses[i].error_title);
			check_str(p.statuses[i].error_message);
			check_str(p.statuses[i].error_details);
			check_str(p.statuses[i].recipient_user_id);
			check_str(p.statuses[i].pricing_type);
			check_str(p.statuses[i].pricing_category);
			if (p.statuses[i].wamid == NULL || p.statuses[i].status == NULL)
				abort();
		}
		for (size_t i = 0; i < p.ninbound; i++)
		{
			check_str(p.inbound[i].from);
			check_str(p.inbound[i].from_user_id);
			check_str(p.inbound[i].system_type);
			check_str(p.inbound[i].system_user_id);
			check_str(p.inbound[i].system_previous_user_id);
			if (p.inbound[i].from == NULL && p.inbound[i].from_user_id == NULL)
				abort();
			check_str(p.inbound[i].text);
			if (p.inbound[i].text)
			{
				wh_keyword_normalize(p.inbound[i].text, norm, sizeof(norm));
				if (strlen(norm) >= sizeof(norm))
					abort();
			}
		}
		for (size_t i = 0; i < p.ntemplates; i++)
		{
			check_str(p.templates[i].event);
			check_str(p.templates[i].name);
			check_str(p.templates[i].language);
			check_str(p.templates[i].reason);
			check_str(p.templates[i].template_id);
			check_str(p.templates[i].category);
			check_str(p.templates[i].disable_date);
			check_str(p.templates[i].other_title);
			check_str(p.templates[i].other_description);
		}
		for (size_t i = 0; i < p.ncategories; i++)
		{
			check_str(p.categories[i].name);
			check_str(p.categories[i].language);
			check_str(p.categories[i].template_id);
			check_str(p.categories[i].previous_category);
			check_str(p.categories[i].new_category);
			check_str(p.categories[i].correct_category);
		}
		for (size_t i = 0; i < p.ntemplate_quality; i++)
		{
			check_str(p.template_quality[i].name);
			check_str(p.template_quality[i].new_quality);
		}
		for (size_t i = 0; i < p.nquality; i++)
		{
			check_str(p.quality[i].event);
			check_str(p.quality[i].current_limit);
		}
	}
	else if (p.error[0] == '\0')
		abort();				/* every refusal says why */
	wh_payload_free(&p);

	/* the header decoder and the normaliser on raw bytes, NUL-terminated */
	{
		char	   *s = malloc(size + 1);

		memcpy(s, data, size);
		s[size] = '\0';
		(void) wh_signature_decode(s, strlen(s), sig);
		wh_keyword_normalize(s, norm, sizeof(norm));
		wh_keyword_normalize(s, norm, 3);
		free(s);
	}
	return 0;
}
