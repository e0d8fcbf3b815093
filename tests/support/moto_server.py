"""moto's server, with one answer made as AWS makes it.

AWS's DescribeParameters returns up to MaxResults (at most 50) parameters a
page; moto 5 always pages by 10. secretsync's change detection asks for 50
names a call, so against stock moto its cost would be counted five times over.
Everything else is moto unchanged. Usage: python3 moto_server.py -H HOST -p PORT
"""

import sys

from moto.core.responses import ActionResult
from moto.ssm import responses


def describe_parameters(self):
    page_size = min(int(self._get_param("MaxResults") or 10), 50)
    token = self._get_param("NextToken") or "0"
    start = int(str(token).strip() or "0")
    found = self.ssm_backend.describe_parameters(
        self._get_param("Filters"), self._get_param("ParameterFilters")
    )
    page = found[start : start + page_size]
    response = {"Parameters": [p.describe_response_object(False) for p in page]}
    if start + page_size < len(found):
        response["NextToken"] = str(start + page_size)
    return ActionResult(response)


responses.SimpleSystemManagerResponse.describe_parameters = describe_parameters

from moto.server import main  # noqa: E402

sys.exit(main(sys.argv[1:]))
