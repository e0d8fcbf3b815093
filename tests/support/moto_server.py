"""moto's server, with three answers made as AWS makes them.

- AWS's DescribeParameters returns up to MaxResults (at most 50) parameters a
  page; moto 5 always pages by 10. secretsync's change detection asks for 50
  names a call, so against stock moto its cost would be counted five times
  over.
- With IAM checks on (POST /moto-api/reset-auth, moto's own switch), moto 5.2
  answers an unsigned AssumeRoleWithWebIdentity with a 500: AWS takes it
  unsigned (the web identity token is the credential), so it passes here.
- A JSON-protocol service (Secrets Manager, SSM) that IAM refuses answers as
  AWS does, 400 with `AccessDeniedException` in JSON; moto sends a 403 in XML.

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

from moto.core.authorization import ActionAuthenticatorMixin  # noqa: E402
from moto.core.exceptions import JsonRESTError  # noqa: E402
from moto.iam.access_control import IAMRequest  # noqa: E402

checked = ActionAuthenticatorMixin._authenticate_and_authorize_action


def authenticate_and_authorize(self, iam_request_cls, resource="*"):
    if self._get_action() == "AssumeRoleWithWebIdentity":
        return None
    return checked(self, iam_request_cls, resource)


ActionAuthenticatorMixin._authenticate_and_authorize_action = authenticate_and_authorize
refuse = IAMRequest._raise_access_denied


def raise_access_denied(self):
    if "X-Amz-Target" in self._headers:
        raise JsonRESTError(
            "AccessDeniedException",
            f"User: {self._access_key.arn} is not authorized to perform: {self._action}",
        )
    refuse(self)


IAMRequest._raise_access_denied = raise_access_denied

from moto.server import main  # noqa: E402

sys.exit(main(sys.argv[1:]))
